"""Pieces every stage of the pipeline shares: config, money, time, message schema, row keys, clients."""
