"""The sender: reads batch lines on stdin and sends each record as a templated email through SES."""
