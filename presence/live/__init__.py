"""Following the changes live (contract §9): the streams, what wakes them, and forwarding to the app."""
