"""Operator functions: the AdminService servicer and the operator CLI, over one shared registry."""
