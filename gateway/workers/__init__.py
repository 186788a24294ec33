"""Worker processes of `sealgate serve`: SMTP listeners and queue runners, started and
restarted by the supervisor (gateway/supervisor.py) as `python -m gateway.workers KIND N`."""
