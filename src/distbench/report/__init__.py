"""Figures and HTML report: the only package that plots."""
