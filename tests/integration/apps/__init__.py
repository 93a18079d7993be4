"""What the web integration tests share: a README recipe run as written, under a real server."""
