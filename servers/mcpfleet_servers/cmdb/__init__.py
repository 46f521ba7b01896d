"""The cmdb server: assets, service topology and change records behind one backend interface."""
