"""Genstore's REST API (version 202412), as far as the sink reads it: an order's refunds, refund
details, the order list, the shop's zone and currency (`client`), and the comparison of a
shop's refunds with the local record (`reconcile`).

Where Genstore's partner docs are silent, the client assumes the following (the README repeats
this list; change it here and there together):

1. Envelopes: `GET /orders/{orderId}/refunds` and `GET /refunds` answer
   `{"refunds": [<refund>, ...]}` (a single `{"refund": {...}}` is read as a list of one);
   `GET /orders` answers `{"orders": [<order>, ...]}`, each order naming itself by `orderId`
   (or `id`).
2. A refund object has the fields of the `refunds/create` webhook's `refund` object (`id` or
   `refundId`, `orderId`, `status`, `refundPrice` or `amount`, `updateTime`, ...), so a pulled
   refund wrapped as `{"refund": ...}` is read by the worker's normal parser.
3. The order list's time window is `updatedAtMin` / `updatedAtMax` (ISO 8601 with an offset),
   sent on the first page only, as every parameter but `pageToken`.
4. Paging: a `Link` header with `rel="next"` whose URL carries `pageToken`; no header, the
   last page. `limit` is 50 unless asked, at most 250.
5. Errors: 401 and 403 mean the token is wrong or lacks a scope (not retried); 429 carries
   `Retry-After` in seconds (an HTTP date is read too); 5xx is transient; any other 4xx is
   permanent. Error bodies are not read (their shape is not published).
6. `GET /shops/info` answers the shop object with `ianaTimezone` (an IANA name such as
   `America/New_York`) and `currency` (ISO 4217; `currencyCode` is read too), either at the
   top, under `data` or under `shop` (the docs name the fields, not the envelope).
"""
