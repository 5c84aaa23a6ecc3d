//! Sending one message: over SMTP when `HUB_SMTP_URL` is set (`smtp://host:port`,
//! `smtps://user:pass@host`), otherwise as an `.eml` file under `$HUB_DATA_DIR/mail/`, so development and
//! tests need no mail server. Messages have a plain-text and an HTML part and a `Message-ID` made from
//! their outbox id, so a retry of a message the server already took is recognisably the same message.
//! Only the outbox (`mail::outbox`) sends.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use lettre::message::header::{ContentTransferEncoding, ContentType};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use uuid::Uuid;

use crate::config::Config;

/// How long one SMTP exchange may take (the outbox's claim on a message outlasts it).
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// A message to send.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

enum Transport {
    Smtp(Box<AsyncSmtpTransport<Tokio1Executor>>),
    Files(PathBuf),
}

/// See the module documentation.
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    /// Base of the links in mails.
    pub public_url: String,
    /// Wakes this instance's delivery worker when a message was queued.
    queued: std::sync::Arc<tokio::sync::Notify>,
}

/// Why a message was not sent.
#[derive(Debug)]
pub struct SendFailure {
    /// The server refused it for good (an unknown mailbox, say): retrying cannot help.
    pub permanent: bool,
    pub detail: String,
}

impl Mailer {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let from: Mailbox =
            config.mail.from.parse().with_context(|| {
                format!("HUB_MAIL_FROM={} is not a mail address", config.mail.from)
            })?;
        let transport = match &config.mail.smtp_url {
            Some(url) => Transport::Smtp(Box::new(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .context("HUB_SMTP_URL is not a usable SMTP address")?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            )),
            None => Transport::Files(config.data_dir.join("mail")),
        };
        Ok(Self {
            transport,
            from,
            public_url: config.mail.public_url.clone(),
            queued: std::sync::Arc::default(),
        })
    }

    /// Tells this instance's delivery worker that a message is waiting (call after the commit).
    pub fn wake(&self) {
        self.queued.notify_one();
    }

    /// What [`wake`](Self::wake) notifies (for the delivery worker).
    pub fn wakes(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.queued)
    }

    /// Sends `mail` as message `id`.
    #[tracing::instrument(skip_all, fields(subject = %mail.subject, message_id = %id))]
    pub async fn send(&self, id: Uuid, mail: &OutgoingMail) -> Result<(), SendFailure> {
        let failure = |permanent: bool, detail: String| SendFailure { permanent, detail };
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|_| failure(true, "the recipient is not a mail address".into()))?;
        let domain = self.from.email.domain().to_owned();
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .message_id(Some(format!("<{id}@{domain}>")))
            // Quoted-printable keeps the messages readable as files and links intact for any client.
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_PLAIN)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(mail.text.clone()),
                    )
                    .singlepart(
                        SinglePart::builder()
                            .header(ContentType::TEXT_HTML)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(mail.html.clone()),
                    ),
            )
            .map_err(|e| failure(true, format!("cannot build the message: {e}")))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message).await.map_err(|e| {
                    failure(
                        e.is_permanent(),
                        format!("the SMTP server did not take it: {e}"),
                    )
                })?;
                tracing::info!("mail sent over SMTP");
            }
            Transport::Files(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| failure(false, format!("cannot create {}: {e}", dir.display())))?;
                // Named by message: a retry writes the same file again.
                let path = dir.join(format!("{id}.eml"));
                tokio::fs::write(&path, message.formatted())
                    .await
                    .map_err(|e| failure(false, format!("cannot write {}: {e}", path.display())))?;
                tracing::info!(path = %path.display(), "mail written to a file (HUB_SMTP_URL is not set)");
            }
        }
        Ok(())
    }
}

/// Escapes text for HTML.
pub fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A mail with one call to action: a greeting, a paragraph, a link, and a closing line.
pub fn action_mail(
    to: &str,
    subject: &str,
    greeting_name: &str,
    intro: &str,
    action: &str,
    link: &str,
    outro: &str,
) -> OutgoingMail {
    let text = format!(
        "Hello {greeting_name},\n\n{intro}\n\n{action}:\n{link}\n\n{outro}\n\n— Joyfull Hub\n"
    );
    let html = format!(
        "<!doctype html><html><body style=\"font-family:sans-serif\">\
         <p>Hello {name},</p><p>{intro}</p>\
         <p><a href=\"{link}\">{action}</a></p>\
         <p style=\"color:#555\">{outro}</p><p>— Joyfull Hub</p></body></html>",
        name = html_escape(greeting_name),
        intro = html_escape(intro),
        link = html_escape(link),
        action = html_escape(action),
        outro = html_escape(outro),
    );
    OutgoingMail {
        to: to.to_owned(),
        subject: subject.to_owned(),
        text,
        html,
    }
}
