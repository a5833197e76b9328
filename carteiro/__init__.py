"""carteiro: a complete e-mail system (SMTP, LDA, IMAP4, POP3, webmail) in one package."""

__version__ = "0.1.0"
