"""Reports: one report model, rendered for the terminal (rich) and as HTML (jinja2)."""
