"""The console driven in headless Chromium against the real stack. A package, so that its
conftest.py is `browser.conftest` and never shadows tests/conftest.py's `conftest`, which the
other test modules import."""
