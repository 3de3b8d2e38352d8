"""The ``posenas`` sub-commands, one module per group; each registers its parsers and handlers and imports
heavy libraries only inside the handlers that use them."""
