"""Outbox handlers: what each kind of outbox row carries out, one module per family."""
