"""Batch stages downstream of Pub/Sub: the spooler and the aggregation job."""
