"""Thin Qt views over ``desktop_ft.core``: they render state and forward intent, never block."""
