using System.Data.Common;

namespace Vigie.Core.Data;

/// <summary>Small ADO.NET helpers so modules need not repeat parameter plumbing.</summary>
public static class DbCommandExtensions
{
    public static DbCommand CreateCommand(this DbConnection connection, DbTransaction? transaction, string sql)
    {
        var command = connection.CreateCommand();
        // A gated SQLite transaction is ours; the provider's command wants its own.
        command.Transaction = transaction is GatedTransaction gated ? gated.Inner : transaction;
        command.CommandText = sql;
        return command;
    }

    public static DbCommand With(this DbCommand command, string name, object? value)
    {
        var parameter = command.CreateParameter();
        parameter.ParameterName = name;
        parameter.Value = value ?? DBNull.Value;
        command.Parameters.Add(parameter);
        return command;
    }
}
