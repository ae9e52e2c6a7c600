"""The Flask dashboard and JSON API over Bigtable range scans."""
