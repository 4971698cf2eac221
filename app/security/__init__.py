"""What stands between the network and the routes: authentication before any body is read,
body bounds, throttling, response headers, log redaction, the documentation pages."""
