"""Figures (PNG) and reports/report.md."""
