"""Adapters over AWS services, each a small class around a lazily created boto3 client.

boto3 is imported on first use, never at module import, so a handler's cold import stays small; clients are
cached per (service, region) for the life of the process (a Lambda container) and are thread-safe.
"""
