"""Beyond one process: bulk embedding on a Ray cluster, training leases shared by server workers."""
