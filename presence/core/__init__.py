"""The pure core: webhook bodies to events, events to facts. No I/O, no clock."""
