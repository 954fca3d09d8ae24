"""Core: the one touch point with OpenTelemetry's context, stores, snapshots, settings, text."""
