"""Fleet mechanics: route classes and classify, the IDE proxy, admission, keep-alive."""
