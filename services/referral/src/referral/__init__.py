"""Referral: needs published to charities when government aid ends, and outreach."""
