"""verify_svc: see service.py for what it hosts."""
