"""Sessions below the screens: recording what was asked, session files, replaying and rerunning answers."""
