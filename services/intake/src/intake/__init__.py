"""Intake: households, applications and cases; the case read model assembled from every service's events."""
