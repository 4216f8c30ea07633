"""Which card declines are hard (never retried on the same card) and which are soft.

Dunning retries a soft decline on its schedule and never retries a hard one: the issuer said the
card will not be approved again (lost, stolen, fraud, closed or blocked account, the cardholder
revoked the merchant), or the stored card cannot work for an off-session charge as it is
(expired, wrong number, needs the customer present). Retrying those only adds scheme penalties
(Visa's "issuer will never approve" category, Mastercard's "do not try again" advice).
The issue names the do-not-honor class hard, so ``do_not_honor`` (Stripe) and 5005
(CloudPayments) are hard here although some processors retry them. docs/billing.md lists both
tables.
"""

from __future__ import annotations

from typing import Final

#: Stripe ``decline_code`` values (https://docs.stripe.com/declines/codes) that are hard.
STRIPE_HARD_DECLINES: Final = frozenset(
    {
        # the issuer flags the card or the merchant: never approve
        "fraudulent",
        "highest_risk_level",
        "lost_card",
        "stolen_card",
        "pickup_card",
        "merchant_blacklist",
        "security_violation",
        "restricted_card",
        "do_not_honor",
        "do_not_try_again",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "stop_payment_order",
        "transaction_not_allowed",
        # the stored card cannot work as it is: the customer must bring another one
        "invalid_account",
        "incorrect_number",
        "invalid_number",
        "expired_card",
        "card_not_supported",
        "currency_not_supported",
        "new_account_information_available",
        # off-session: 3-D Secure needs the customer, a retry without them fails again
        "authentication_required",
    }
)

#: Stripe ``advice_code`` values that make any decline hard.
STRIPE_HARD_ADVICE: Final = frozenset({"do_not_try_again", "confirm_card_data"})

#: CloudPayments ``ReasonCode`` values (https://developers.cloudpayments.ru/#kody-oshibok)
#: that are hard.
CLOUDPAYMENTS_HARD_REASONS: Final = frozenset(
    {
        5004,  # Pick Up Card
        5005,  # Do Not Honor (the do-not-honor class)
        5007,  # Pick Up Card Special Conditions
        5012,  # Invalid Transaction: the card is not for online payments
        5014,  # Invalid Card Number
        5015,  # No Such Issuer
        5031,  # Bank Not Supported By Switch: unknown issuer
        5033,  # Expired Card Pickup
        5034,  # Suspected Fraud
        5036,  # Restricted Card
        5041,  # Lost Card
        5043,  # Stolen Card
        5054,  # Expired Card
        5057,  # Transaction Not Permitted (to the cardholder)
        5062,  # Restricted Card
        5063,  # Security Violation
    }
)


def stripe_decline_is_hard(decline_code: str | None, advice_code: str | None = None) -> bool:
    return decline_code in STRIPE_HARD_DECLINES or advice_code in STRIPE_HARD_ADVICE


def cloudpayments_decline_is_hard(reason_code: int | None) -> bool:
    return reason_code in CLOUDPAYMENTS_HARD_REASONS
