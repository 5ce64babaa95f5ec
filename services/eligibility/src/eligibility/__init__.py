"""Eligibility: the means test and the decisions on every programme a household may qualify for."""
