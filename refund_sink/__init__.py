"""The `refund-sink` command line. Nothing imports it; it imports everything."""
