DELETE FROM email_tokens WHERE purpose = 'CANCEL_EMAIL_CHANGE';
ALTER TABLE email_tokens DROP CONSTRAINT email_tokens_purpose_check;
ALTER TABLE email_tokens ADD CONSTRAINT email_tokens_purpose_check
    CHECK (purpose IN ('VERIFY_EMAIL', 'CHANGE_EMAIL', 'RESET_PASSWORD'));
