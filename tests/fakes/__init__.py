"""Fakes of the outside systems the hub sends SMS through, speaking their real protocols.

``twilio_api``: Twilio's Messages API over HTTP (checked with the official ``twilio``
SDK); ``smsc``: an SMPP 3.4 SMSC (the ``smpp`` npm package's server, checked with
``smpplib``). Their fixtures are in ``fixtures``; how to use them is in README.md.
"""
