"""Admin diagnostics: probe a domain, explain a routing decision."""
