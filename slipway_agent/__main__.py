from slipway_agent.cli import main

raise SystemExit(main())
