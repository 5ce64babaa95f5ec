"""The sandbox bank: a payment provider's test mode, for `make up` and the tests.

It accepts payment instructions (idempotent on `Idempotency-Key`), decides each by a rule on the account
number, and calls back with a signed status, the way a real gateway does:

| account ends with | outcome |
|---|---|
| `0000` | failed ("account closed") |
| `9999` | settled, then returned a moment later ("account frozen") |
| `7777` | settled, and the callback is sent twice |
| `5555` | a temporary failure on the first attempt; the same order submitted again settles |
| anything else | settled |

State is in memory: a restart forgets everything (the daily statement file arrives with the disbursement
issue).
"""
