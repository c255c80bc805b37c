import TMFCLI

TMFCommand.main()
