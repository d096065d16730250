"""The wire protocol as data: types, the control-plane codec, data-plane JSON-RPC, compression.

Nothing here does I/O or imports trio; both the clients and the reference server build on it.
"""
