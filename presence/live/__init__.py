"""Following the changes live (contract §9): the stream and forwarding to the app."""
