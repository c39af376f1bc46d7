"""The wizard pages: one file per page; each reads and writes the shared ``Session`` only."""
