"""Intake: accepted webhook events on their way into one durable transaction."""
