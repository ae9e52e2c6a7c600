"""Emits simulated card transactions to Pub/Sub."""
