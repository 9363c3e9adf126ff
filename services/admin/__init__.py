"""Admin: the AdminService servicer (`servicer`, hosted by result_svc) and the operator CLI (`cli`), both
over the registry (services.registry), which holds the records, their validation and their SQL."""
