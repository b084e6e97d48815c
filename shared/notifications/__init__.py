"""Email notifications: rotation notices, threshold alerts and failure alerts through ACS Email."""
