"""HTTP routers, one per concern; each only parses, calls one use case and formats."""
