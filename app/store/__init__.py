"""Every SQL statement the service runs lives in this package, one module per resource type."""
