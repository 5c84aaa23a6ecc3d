-- An email change mails the old address a link that cancels it (and, if the change was already
-- confirmed, puts the old address back and ends every session).
ALTER TABLE email_tokens DROP CONSTRAINT email_tokens_purpose_check;
ALTER TABLE email_tokens ADD CONSTRAINT email_tokens_purpose_check
    CHECK (purpose IN ('VERIFY_EMAIL', 'CHANGE_EMAIL', 'RESET_PASSWORD', 'CANCEL_EMAIL_CHANGE'));
