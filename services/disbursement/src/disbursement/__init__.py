"""Disbursement: entitlements, payment instructions paid exactly once, the bank."""
