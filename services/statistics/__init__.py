"""Statistics for the provincial health department (StatisticsService, the daily summary, the CSV export).

A leaf room like admin: hosted by the result_svc process (composed in services/result_svc/__main__.py),
and read by the operator CLI's `statistics export` (services.admin). See summary.py for how the figures
are kept fast and figures.py for suppression.
"""
