"""ASR service: holds the speech models and streams segments while it decodes."""
