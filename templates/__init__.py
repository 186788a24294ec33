"""Jinja2 templates of notification mails and portal pages, installed as package data."""
