"""Mail authentication: DKIM signing (and SPF, DMARC, ARC as they land)."""
