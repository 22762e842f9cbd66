"""The delivery benchmark: the monthly cycle of 1,000 reviews to 200 owners plus leadership over local SMTP."""
