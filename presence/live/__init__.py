"""Following the changes live: the streams of ``GET /changes/stream`` and what wakes them."""
