"""HTTP: the aiohttp application, ``/hook`` in, the query API out."""
