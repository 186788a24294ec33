"""SMTP TLS Reporting (RFC 8460): what each delivery session showed, counted per policy
domain and day (results.py), the daily aggregate report (report.py), where a domain wants
it (rua.py), how it gets there (send.py), and when (schedule.py)."""
